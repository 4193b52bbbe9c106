"""gunicorn settings read by every ``gunicorn wsgi:app`` started in this folder (the README's
command, the systemd unit in deploy/, the tests' servers). Command-line options still win."""
import glob
import os

# Payment and card tokens in URLs are written as *** in the access log (moralbank/accesslog.py).
logger_class = "moralbank.accesslog.TokenMaskingLogger"

# LOG_FORMAT=json (the default with MORALBANK_ENV=production): gunicorn's own messages (worker
# boots, timeouts) are JSON lines on standard error too, like the app's (moralbank/requestlog.py). The
# app writes one JSON line per request (route pattern, status, time, user id), so gunicorn's access
# log is not needed; with --access-logfile it is still written, tokens masked.
if os.environ.get("LOG_FORMAT", "json" if os.environ.get("MORALBANK_ENV") == "production" else "text") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "moralbank.requestlog.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": []},
        # gunicorn.access is left as gunicorn sets it: off, or the file of --access-logfile
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False}},
    }


# Prometheus multiprocess mode (moralbank/metrics.py): each worker writes its figures to files in
# PROMETHEUS_MULTIPROC_DIR; /metrics sums them. The folder is emptied when the master starts and a
# dead worker's live gauges are dropped.
def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for path in glob.glob(os.path.join(folder, "*.db")):
            os.remove(path)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
