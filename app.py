"""`python app.py`: serve gpuq on http://localhost:5000 (see `python app.py --help`)."""

if __name__ == "__main__":
    # Patch the standard library before anything imports it, so the master
    # process and the gevent workers agree on sockets, threads and ssl.
    from gevent import monkey

    monkey.patch_all()

    from gpuq.server import main

    raise SystemExit(main())
