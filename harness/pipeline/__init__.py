"""Running things on a target from start to end: sessions that keep a guest up."""
