"""DetLens dashboard: the Streamlit frame, session state, cached wrappers and pure figure builders."""
