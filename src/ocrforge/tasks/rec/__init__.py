"""Text recognition: CTC and attention recognisers over word and line crops."""
