"""Route modules; each adds its operations to the one ``API``."""
from ..api import Api

API = Api()
