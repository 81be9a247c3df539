# brig's built-in "code-interpreter" template, like E2B's: what the
# @e2b/code-interpreter SDK talks to. Debian's python3 with ipykernel,
# numpy, pandas and matplotlib, node (JavaScript, and TypeScript through
# Debian's node-typescript), bash, and two servers started in every sandbox:
#   49999  brig's own server of E2B's code-interpreter API (code-interpreter/server.py)
#   8888   Debian's Jupyter notebook UI, no token (the daemon's traffic token guards it)
# Everything comes from Debian's archive: a build reaches no other registry.
# Built on first use, or ahead with `brig image build code-interpreter`.
FROM debian:bookworm

# fontconfig-config's postinst makes /usr/local/share/fonts setgid (chmod
# 2775), which brig's seccomp filter refuses in a jail: made first, the
# postinst leaves it alone. (Debian's scipy, pulled in by matplotlib's
# fonttools, brings pythran and with it boost and gcc.)
RUN mkdir -p /usr/local/share/fonts \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-ipykernel python3-jupyter-client python3-matplotlib \
      python3-matplotlib-inline python3-numpy python3-pandas jupyter-notebook \
      nodejs node-typescript \
      bash curl ca-certificates procps \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --home-dir /home/user --shell /bin/bash --uid 1000 --user-group user

# The server, brig's kernels for JavaScript, TypeScript and bash, and their kernelspecs where Jupyter looks
COPY code-interpreter/ /opt/code-interpreter/
RUN mkdir -p /usr/local/share/jupyter/kernels \
 && cp -r /opt/code-interpreter/kernelspecs/. /usr/local/share/jupyter/kernels/ \
 && chmod 0755 /opt/code-interpreter/start.sh

ENV LANG=C.UTF-8
WORKDIR /home/user
USER user
# matplotlib's font cache, built once here rather than in every sandbox's
# first plot. --network=none: it needs none, and brig cannot yet give a RUN
# step as a user other than root the mirror's network (its relay is root's).
RUN --network=none python3 -c 'import matplotlib.pyplot'

LABEL brig.start="/opt/code-interpreter/start.sh"
LABEL brig.ready-port="49999"
CMD ["/bin/bash"]
