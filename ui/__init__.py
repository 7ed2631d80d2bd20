"""The Streamlit dashboard: ``streamlit run ui``."""
