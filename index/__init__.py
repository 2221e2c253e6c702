"""Gallery indexing: load an inference bundle, encode images, keep FAISS indices on disk."""
