"""Shared data pieces: image reading with counted skips, label files, fonts, collation."""
