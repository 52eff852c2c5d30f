"""Organisations and the purpose and data-category taxonomies."""
