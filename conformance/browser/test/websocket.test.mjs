// Official CometD client in headless Chromium, forced onto the websocket transport.
import { transportSuite } from '../lib/scenarios.mjs';

transportSuite('websocket');
