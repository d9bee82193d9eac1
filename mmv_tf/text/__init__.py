"""Word vectors, stop words and the in-graph text tokenizer."""
