"""The VFE-TPS model: open_clip towers plus the training-only TG-MIM decoder."""
