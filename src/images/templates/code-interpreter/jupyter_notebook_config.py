# The notebook UI of the code-interpreter template (Debian's notebook 6.4),
# started by start.sh on port 8888. Whoever reaches this port is already
# let in: brig's daemon checks the sandbox's traffic token before it
# forwards anything, as E2B's edge does. So the UI asks for no token of its
# own, and it must work behind that proxy, on a host name that is not
# localhost.
c = get_config()  # noqa: F821 (jupyter's config loader defines it)

c.NotebookApp.ip = '0.0.0.0'
c.NotebookApp.port = 8888
# another port would be one nobody forwards: fail instead
c.NotebookApp.port_retries = 0
c.NotebookApp.open_browser = False
c.NotebookApp.base_url = '/'
c.NotebookApp.notebook_dir = '/home/user'
# no login: the traffic token in front is the login
c.NotebookApp.token = ''
c.NotebookApp.password = ''
# the browser's Host names the proxy (e.g. 8888-<sandbox>.<domain>), not a
# local address, which the notebook would refuse as a DNS-rebinding attempt
c.NotebookApp.allow_remote_access = True
# The UI's websockets (kernels, terminals) are checked against their Origin:
# a proxy that rewrites Host (to localhost:8888, say) would make the UI's own
# origin look foreign and every kernel fail to connect. '*' lets the proxy
# decide who gets in.
c.NotebookApp.allow_origin = '*'
# disable_check_xsrf stays False: the UI's pages send their _xsrf cookie
# back as a header through any proxy that passes cookies, and nothing here
# calls the notebook's REST API without a page (the 49999 server talks to
# kernels directly).
