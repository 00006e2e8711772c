"""Automatic metrics: reference-based (BLEU, ROUGE-L, BERTScore, unigram F1) and likelihood-based
(perplexity, hits@1). Each library is imported inside the function that needs it."""
