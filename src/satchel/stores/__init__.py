"""Session backends. Each module holds one store; drivers load only there."""
