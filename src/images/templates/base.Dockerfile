# brig's built-in "base" template, like E2B's base: Debian with python3 and
# pip, node and npm, git, curl and the build tools, and a user "user" (uid
# 1000, home /home/user) that commands run as by default. Root is reached
# through the SDK's user: 'root', not sudo, so sudo is not installed.
# Built on first use, or ahead with `brig image build base`.
FROM debian:bookworm

# --no-install-recommends keeps it lean; the apt lists go with the layer that fetched them
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv \
      nodejs npm \
      git curl ca-certificates \
      build-essential procps \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# the sandbox is the environment: pip install works as on E2B (Debian's PEP 668 marker would refuse it)
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED

RUN useradd --create-home --home-dir /home/user --shell /bin/bash --uid 1000 --user-group user

ENV LANG=C.UTF-8
WORKDIR /home/user
USER user
CMD ["/bin/bash"]
