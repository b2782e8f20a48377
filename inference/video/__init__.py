"""Video: audio decoding, H.264/AAC MP4 writing, and the talking-head reference animator (pure: no DB, no app)."""
