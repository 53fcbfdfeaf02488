"""``make bench-peers``: a peer comparison with Apache Airflow that anyone can rerun."""
