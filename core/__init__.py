"""DetLens core: models, weights, images, timed inference, records. Knows nothing of Streamlit."""
