"""OpenAPI component names for the nested serializers of this app's API classes."""

from drf_spectacular.utils import extend_schema_serializer
from rest_framework.views import APIView


def name_nested_serializers(namespace: dict) -> None:
    """Give each nested Input/OutputSerializer of the API classes in ``namespace`` (a module's
    ``globals()``) its own OpenAPI component name.

    They all share the names "Input" and "Output", which the schema generator would otherwise
    merge into one component across APIs (here and in other apps).
    """
    for name, api in list(namespace.items()):
        if isinstance(api, type) and issubclass(api, APIView):
            for nested in ("InputSerializer", "OutputSerializer"):
                serializer = api.__dict__.get(nested)
                if serializer is not None:
                    component = name.removesuffix("Api") + nested.removesuffix("Serializer")
                    extend_schema_serializer(component_name=component)(serializer)
