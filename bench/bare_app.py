"""The baseline: a bare Flask JSON endpoint, served exactly like gpuq (gunicorn, gevent, same workers)."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify({"status": "healthy"})
