"""gunicorn settings read by every ``gunicorn wsgi:app`` started in this folder (the README's
command, the tests' servers). Command-line options still win."""

# Payment and card tokens in URLs are written as *** in the access log (moralbank/accesslog.py).
logger_class = "moralbank.accesslog.TokenMaskingLogger"
