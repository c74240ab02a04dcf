"""Typed application state (aiohttp AppKey), shared by the web modules."""

from __future__ import annotations

from aiohttp import web

from bot.api_token import TokenCheck
from bot.dispatcher import Dispatcher
from bot.reviews.scheduler import ReviewScheduler
from bot.services import Services

SERVICES = web.AppKey("services", Services)
TOKEN_CHECK = web.AppKey("token_check", TokenCheck)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
GENERATED_TOKEN = web.AppKey("generated_token", str)
REVIEW_SCHEDULER = web.AppKey("review_scheduler", ReviewScheduler)
