"""Write operations of the sessions app (the only code that mutates session state).

Modules: ``sessions`` (session rows and transcripts), ``runs`` (queueing turns); later
``deliveries``, ``system_events``, ``subagents``… Each function is keyword-only and
typed, wraps multi-row changes in a transaction and publishes events after commit.
"""
