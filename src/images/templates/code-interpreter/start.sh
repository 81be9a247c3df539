#!/bin/sh
# The code-interpreter template's start command (LABEL brig.start): the
# daemon runs it in the background, as `user`, in every sandbox from the
# template. The notebook UI (8888) starts beside the API server (49999); the
# server opens its port once its Python kernel is ready, which is what the
# sandbox's create waits for (LABEL brig.ready-port). Logs go to /tmp, out
# of the notebook's tree (/home/user).
cd "${HOME:-/home/user}" || exit 1
# ipykernel's debugger would warn about frozen modules at every kernel start
export PYDEVD_DISABLE_FILE_VALIDATION=1
jupyter notebook --config=/opt/code-interpreter/jupyter_notebook_config.py >/tmp/jupyter-notebook.log 2>&1 &
exec python3 /opt/code-interpreter/server.py >/tmp/code-interpreter.log 2>&1
