"""Gallery images in: their sources (a folder, a benchmark split), metadata sidecars, batched
encoding, and the atomic add into a store."""
