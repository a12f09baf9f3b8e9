"""Data: registry sources, extraction, corpora (clean/split), tokenizer, subsets and mixtures."""
