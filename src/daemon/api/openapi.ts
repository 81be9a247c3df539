import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ENVD_PORT } from '../../protocol/index.ts';

/**
 * The OpenAPI document, built from the routes' own schemas (never written by
 * hand, so it cannot drift), at /openapi.json, and Swagger UI at /docs. Both
 * are public: they describe the API, they do not use it.
 */

const DESCRIPTION = `brig's daemon: E2B's control plane (the e2b SDK works with apiUrl and sandboxUrl set here) and brig's own /v1 routes.

Every route here needs the daemon's API key, as X-API-KEY or Authorization: Bearer. Errors are {code, message, hint}; docs/errors.md lists the codes.

The envd gateway is not listed route by route: any request with an E2b-Sandbox-Id header (or under /sandboxes/{id}/envd/) goes to that sandbox's envd (port ${ENVD_PORT} in E2B: Connect RPCs, /files, /health), authenticated by the sandbox's X-Access-Token instead of the API key; signed /files URLs need neither.`;

export function registerOpenApi(app: FastifyInstance, version: string): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'brig', version, description: DESCRIPTION },
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
      security: [{ apiKey: [] }, { bearer: [] }],
    },
  });
  void app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
