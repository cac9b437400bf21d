"""``rede serve``: a network as a service: an OpenAI-compatible API, runs and their live
events, A2A v1.0 and a web page, on FastAPI. Needs the ``serve`` extra
(``pip install 'rede[serve]'``)."""

from rede.server.app import create_app
from rede.server.runs import RunManager, ServedRun
from rede.server.settings import ServerSettings

__all__ = ["RunManager", "ServedRun", "ServerSettings", "create_app"]
