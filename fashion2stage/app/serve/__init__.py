"""``fashion2stage serve``: the pipeline as an HTTP service (FastAPI + uvicorn) with a web page.

    app.py      routes: POST /v1/predict (multipart images -> predictions.jsonl lines), GET /healthz, GET / (the page);
                upload limits and one-line JSON errors
    batcher.py  the bounded queue that gathers images of concurrent requests into model batches
    static/     the page: plain HTML + JS, no build step

Predictions come from :class:`fashion2stage.app.reader.Reader` and images are decoded by
:func:`fashion2stage.images.load_image_bytes`: the same code as ``predict`` and the Python API, nothing re-implemented.
"""
