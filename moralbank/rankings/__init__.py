"""Period scores, stars and rankings."""
