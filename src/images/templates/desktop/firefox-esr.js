// brig's desktop template: Firefox ESR preferences, read after Debian's own
// /etc/firefox-esr/firefox-esr.js (Firefox reads every file in this directory).

// brig's jail refuses user namespaces (seccomp: clone and unshare with
// CLONE_NEWUSER), so Firefox's sandbox runs without its namespace layer; its
// seccomp-bpf layer still confines every content process. Firefox then puts a
// "less protection on your operating system" bar on every window, which an
// agent would see in each screenshot and could not fix: the jail is the
// boundary, so the bar goes. Nothing about the sandbox itself is changed.
pref("security.sandbox.warn_unprivileged_namespaces", false);

// First run: no welcome page and no privacy-notice tab. A sandbox has no
// network by default, so they would open as "Server Not Found" tabs.
pref("browser.aboutwelcome.enabled", false);
pref("startup.homepage_welcome_url", "");
pref("startup.homepage_welcome_url.additional", "");
pref("browser.startup.homepage_override.mstone", "ignore");
pref("datareporting.policy.firstRunURL", "");
pref("datareporting.policy.dataSubmissionPolicyBypassNotification", true);
