"""Converters between data formats: folder-per-character sets, label files -> LMDB, detection labels -> word crops,
and detection label formats (ICDAR 2015 txt, PaddleOCR det files) into each other."""
