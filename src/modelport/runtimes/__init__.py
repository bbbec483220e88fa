"""One module per backend, all the same shape: a Backend (availability, build, load) and a Session."""
