"""Places (county → town → village → hamlet), households, residents, users and roles."""
