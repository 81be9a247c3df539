# brig's built-in "desktop" template, like E2B's desktop: for E2B's
# @e2b/desktop SDK, which drives the desktop with shell commands run as
# `user` (uid 1000, home /home/user) with DISPLAY=:0: Xvfb, XFCE, xdotool,
# scrot, x11vnc and noVNC, plus a terminal, an editor and Firefox ESR. The
# SDK starts everything itself (Sandbox.create runs Xvfb, then startxfce4),
# so the template has no start command. docs/templates.md says what works.
# Built on first use, or ahead with `brig image build desktop`.
FROM debian:bookworm

# Two of these packages set a set-id mode, which brig's seccomp filter refuses
# in every jail, build steps included (chmod with S_ISUID or S_ISGID is EPERM;
# docs/seccomp.md), and dpkg stops at the first refusal:
#  - libutempter0 ships its utempter helper setgid utmp: a statoverride makes
#    dpkg unpack it 0755 instead (the store clears set-id bits on import
#    anyway, and nothing here needs utmp entries);
#  - fontconfig-config's postinst makes /usr/local/share/fonts setgid staff
#    (2775) when the directory is missing: made beforehand, plainly, it is left.
# The multiarch directory (x86_64-linux-gnu, aarch64-linux-gnu) is the one the
# base system has, so the template builds on either architecture.
#
# What each group is for:
#  - Xvfb (xvfb), xdpyinfo (x11-utils), xrandr (x11-xserver-utils): the screen
#    the SDK starts and measures;
#  - xfce4 (startxfce4, xfce4-session, xfwm4, xfdesktop, the panel),
#    xfce4-terminal and mousepad (a terminal and an editor for gtk-launch),
#    dbus-x11 (startxfce4's session bus comes from dbus-launch);
#  - xdotool, scrot (screenshots with --pointer), xdg-open (xdg-utils, which
#    opens through exo-open on XFCE: exo-utils), gtk-launch (libgtk-3-bin);
#  - x11vnc, and noVNC with the websockify that its novnc_proxy runs, netstat
#    (net-tools) for the SDK's wait on port 6080;
#  - fonts and icons, so text and the panel render;
#  - firefox-esr: the browser that works in brig's jail unchanged. Its sandbox
#    loses only the user-namespace layer (the jail refuses nested user
#    namespaces) and keeps seccomp-bpf on every content process. Chromium
#    refuses to start there ("No usable sandbox!": it needs user namespaces
#    or its setuid helper, and the jail allows neither) unless given
#    --no-sandbox, which would switch its whole sandbox off;
#  - procps (pgrep, pkill, ps), curl, ca-certificates.
RUN triplet=$(basename /usr/lib/*-linux-gnu) \
 && dpkg-statoverride --add root utmp 0755 /usr/lib/$triplet/utempter/utempter \
 && mkdir -p /usr/local/share/fonts \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      xvfb x11-utils x11-xserver-utils \
      xfce4 xfce4-terminal mousepad dbus-x11 \
      xdotool scrot xdg-utils exo-utils libgtk-3-bin \
      x11vnc novnc websockify net-tools \
      fonts-dejavu-core adwaita-icon-theme \
      firefox-esr \
      procps curl ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# The SDK runs `cd /opt/noVNC/utils && ./novnc_proxy --web /opt/noVNC`, the
# layout of a noVNC checkout; Debian's noVNC lives in /usr/share/novnc.
# novnc_proxy finds /usr/bin/websockify on PATH (without it, it would try
# to git clone one).
RUN ln -s /usr/share/novnc /opt/noVNC

# Firefox ESR reads every file in /etc/firefox-esr: no first-run tabs that
# need the network, no warning bar about the missing user namespaces.
COPY desktop/firefox-esr.js /etc/firefox-esr/brig-desktop.js

RUN useradd --create-home --home-dir /home/user --shell /bin/bash --uid 1000 --user-group user

ENV LANG=C.UTF-8
# @e2b/desktop passes DISPLAY=:0 to every command; set here too, so that
# brig exec, brig shell and the plain e2b SDK reach the same display.
ENV DISPLAY=:0
WORKDIR /home/user
USER user
CMD ["/bin/bash"]
