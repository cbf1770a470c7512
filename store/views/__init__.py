"""Read models for the dashboard: one module per page, each a few named queries.

Every function takes a :class:`store.Database` and returns plain Python values or
DataFrames, in one short read. Pages cache them with ``st.cache_data``.
"""
