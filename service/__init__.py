"""The search service: an HTTP API and a search page over a bundle and a gallery index."""
