"""WSGI entry point: `flask` finds this file, gunicorn serves `wsgi:app`."""
import gc

from moralbank import create_app

app = create_app()
# What start-up made (modules, the app, its routes and mappers) lives as long as the process: moved
# out of the cyclic collector's way, so its full collections do not walk it again and again.
gc.freeze()
