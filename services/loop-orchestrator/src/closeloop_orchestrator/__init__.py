"""Loop orchestrator: opens a follow-up case per response by rule, assigns its owner and its
first-contact deadline, and publishes `case.opened.v1`."""
