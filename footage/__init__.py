"""From camera recordings to the gallery: decode, detect people, track them, keep each track's
best crops, and add them to a gallery store with the track as the person."""
