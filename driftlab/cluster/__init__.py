"""The cluster path: pool placement, KFP submission and schedules, node-pool discovery.

``placement`` and ``exit_record`` import only driftlab's library; ``submit`` needs
the ``kfp`` client and ``discover`` the ``kubernetes`` client, imported when used.
"""
