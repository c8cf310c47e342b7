"""What every PNG file starts with, for the tests of the plots the project writes."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
