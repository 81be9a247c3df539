/**
 * Seed 003's `gui` jobs: an xdotool script (bash) run in a desktop sandbox
 * (the `desktop` template unless the job names another), its screenshots
 * returned as artifacts. brig's launcher, uploaded beside the script, brings
 * the desktop up as @e2b/desktop does (Xvfb on :0, an XFCE session), gives
 * the script `screenshot [NAME]`, takes a last screenshot when it ends, and
 * lists the screenshots for the daemon to fetch. The script's exit code is
 * the job's.
 */

export const GUI_TEMPLATE = 'desktop';
export const GUI_LAUNCHER = '.brig-job/gui.sh';
export const SCREENSHOT_DIR = '.brig-job/screenshots';
/** The launcher's list of screenshots taken, one path (relative to the home) a line. */
export const SCREENSHOT_LIST = '.brig-job/screenshots.txt';
/** What a screenshot's path must look like to be fetched: the list is written inside the sandbox, so it is checked, never trusted. */
export const SCREENSHOT_PATH = /^\.brig-job\/screenshots\/\d{3}-[A-Za-z0-9._-]{1,64}\.png$/;
/** At most this many are fetched (the last screenshot among them): artifacts are capped at 32 a job. */
export const MAX_SCREENSHOTS = 32;

export const GUI_LAUNCHER_SCRIPT = `#!/bin/bash
# brig's gui job launcher: the desktop, then the job's script with screenshot(), then a last screenshot.
export DISPLAY=:0
mkdir -p ${SCREENSHOT_DIR}
: > ${SCREENSHOT_LIST}
screenshot() {
  local name path
  name=$(printf '%s' "\${1:-screenshot}" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-64)
  # Numbered by the list, not a variable: the script runs in a subshell of its own.
  path=$(printf '${SCREENSHOT_DIR}/%03d-%s.png' "$(( $(wc -l < ${SCREENSHOT_LIST}) + 1 ))" "$name")
  scrot --pointer --overwrite "$path" && printf '%s\\n' "$path" >> ${SCREENSHOT_LIST}
}
Xvfb :0 -ac -screen 0 \${BRIG_GUI_RESOLUTION:-1024x768}x24 -nolisten tcp -nolisten unix >/tmp/brig-xvfb.log 2>&1 &
for _ in $(seq 200); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.05; done
xdpyinfo >/dev/null 2>&1 || { echo "brig: the X server did not start (see /tmp/brig-xvfb.log)" >&2; exit 125; }
if command -v startxfce4 >/dev/null; then
  startxfce4 >/tmp/brig-xfce.log 2>&1 &
  for _ in $(seq 600); do pgrep -x xfwm4 >/dev/null && pgrep -x xfdesktop >/dev/null && break; sleep 0.05; done
fi
# A subshell: the script's own exit still leaves the last screenshot to take.
( source .brig-job/main.sh )
status=$?
screenshot final
exit $status
`;
