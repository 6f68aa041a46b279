"""One DRF exception handler: Django's, DRF's and our own errors all leave as the same JSON."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import ApplicationError, error_body
from apps.core.text import clean_json

logger = logging.getLogger(__name__)

# Stable codes for DRF's own exceptions, so clients never match on English text.
_DRF_CODES = {
    exceptions.ParseError: ("malformed_json", "The request body is not valid JSON."),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.NotAuthenticated: (
        "not_authenticated",
        "Authentication credentials were not provided. Send 'Authorization: Token <key>'.",
    ),
    exceptions.AuthenticationFailed: ("authentication_failed", None),
    exceptions.PermissionDenied: ("permission_denied", None),
    exceptions.NotFound: ("not_found", None),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.Throttled: ("throttled", None),
    exceptions.ValidationError: ("invalid_input", "The request is not valid; see details."),
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        body = clean_json(error_body(exc.code, exc.message, exc.details))
        return Response(body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        # Anything unexpected: log it with its traceback, answer a JSON 500 without one.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("server_error", "An unexpected error happened; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code, message = "error", None
    for exc_type, (exc_code, exc_message) in _DRF_CODES.items():
        if isinstance(exc, exc_type):
            code, message = exc_code, exc_message
            break
    details = None
    if isinstance(exc, exceptions.ValidationError):
        details = response.data
    elif message is None:
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    if isinstance(exc, exceptions.ParseError) and hasattr(exc, "detail"):
        details = {"reason": str(exc.detail)}
    # Errors echo the client's input ('"x\ud800" is not a valid choice.'): a lone surrogate
    # in it cannot be encoded as UTF-8, and the renderer would turn a 400 into a 500.
    response.data = clean_json(error_body(code, message or str(exc), details))
    return response
