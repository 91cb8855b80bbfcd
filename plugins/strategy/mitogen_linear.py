"""The `mitogen_linear` strategy of Mitogen for Ansible (PyPI `mitogen`, pinned in requirements.txt).

Ansible's own `linear` strategy starts a new Python process for every task and imports the
module (for kubernetes.core: the Kubernetes client, about 0.7 s here) each time; Mitogen keeps
one interpreter per host and reuses it, which makes a no-op run of the stack about twice as fast
here (`make bench`). It is used on request (`make deploy MITOGEN=1`, or ANSIBLE_STRATEGY=mitogen_linear):
ansible-core 2.19 deprecates strategy plugins from outside ansible.builtin. This file
only makes the strategy loadable from the project's plugin directory, wherever the virtualenv is
(Mitogen's documentation points `strategy_plugins` at its installed package directory instead).
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401  pylint: disable=unused-import
