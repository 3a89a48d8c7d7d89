"""Views: thin — validate input, call a service, serialize."""
