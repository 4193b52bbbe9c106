"""WSGI entry point: `flask` finds this file, gunicorn serves `wsgi:app`."""
from moralbank import create_app

app = create_app()
