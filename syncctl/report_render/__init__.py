"""Renderings of a report dict from `syncctl.report.build_report`, one module a format:
`sections` (the tables shared by the terminal and the HTML page), `prometheus` (text
exposition), `page` (a self-contained HTML page with inline SVG charts); `cells` formats the
cells they share with the terminal printer (`syncctl.cli._output`)."""
