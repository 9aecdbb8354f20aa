"""The local console: a web page over the embedded runtime (see `app`)."""
