"""Answering a query without a store: the query vector, the exact CPU engines and the policy that
picks one, top k, FAISS's search settings. No store is imported here; stores import this."""
