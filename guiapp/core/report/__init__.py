"""The run report: the JSON document, its summaries, the HTML page."""
