// Redfish error bodies (DSP0266 "Error responses": error.code, error.message, @Message.ExtendedInfo with
// MessageIds from the DMTF Base message registry), and the status each kind of refusal gets.
import { MachineError } from '../machine/machine.js';

const BASE = 'Base.1.15';

export class RedfishError extends Error {
  constructor(
    readonly status: number,
    readonly messageId: string,
    message: string,
    readonly relatedProperties: string[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const errors = {
  unauthorized: (why = 'give HTTP basic credentials or a session token') =>
    new RedfishError(401, `${BASE}.NoValidSession`, `There is no valid session established with the implementation: ${why}.`, [], { 'www-authenticate': 'Basic realm="uod-virtual-bmc"' }),
  notFound: (path: string) => new RedfishError(404, `${BASE}.ResourceNotFound`, `The requested resource ${path} was not found.`),
  methodNotAllowed: (method: string, path: string, allow: string[]) =>
    new RedfishError(405, `${BASE}.OperationNotAllowed`, `${method} is not allowed on ${path}; allowed: ${allow.join(', ')}.`, [], { allow: allow.join(', ') }),
  malformedJson: () => new RedfishError(400, `${BASE}.MalformedJSON`, 'The request body submitted was malformed JSON and could not be parsed by the receiving service.'),
  propertyUnknown: (prop: string) => new RedfishError(400, `${BASE}.PropertyUnknown`, `The property ${prop} is not in the list of valid properties for the resource.`, [`#/${prop}`]),
  propertyNotWritable: (prop: string) => new RedfishError(400, `${BASE}.PropertyNotWritable`, `The property ${prop} is a read only property and cannot be assigned a value.`, [`#/${prop}`]),
  propertyValueType: (prop: string, want: string) => new RedfishError(400, `${BASE}.PropertyValueTypeError`, `The value for the property ${prop} is of a different type than the property can accept (${want}).`, [`#/${prop}`]),
  parameterMissing: (action: string, param: string) => new RedfishError(400, `${BASE}.ActionParameterMissing`, `The action ${action} requires the parameter ${param} to be present in the request body.`, [`#/${param}`]),
  parameterUnknown: (action: string, param: string) => new RedfishError(400, `${BASE}.ActionParameterUnknown`, `The action ${action} was submitted with the invalid parameter ${param}.`, [`#/${param}`]),
  parameterType: (action: string, param: string, want: string) => new RedfishError(400, `${BASE}.ActionParameterValueTypeError`, `The value for the parameter ${param} in the action ${action} is of a different type than the parameter can accept (${want}).`, [`#/${param}`]),
  preconditionFailed: () => new RedfishError(412, `${BASE}.PreconditionFailed`, 'The ETag supplied did not match the ETag required to change this resource.'),
  preconditionRequired: () => new RedfishError(428, `${BASE}.PreconditionRequired`, 'A precondition header is required for this change: send If-Match with the resource\'s ETag.'),
  propertyValueNotInList: (prop: string, value: unknown, allowed: unknown[]) =>
    new RedfishError(400, `${BASE}.PropertyValueNotInList`, `The value ${JSON.stringify(value)} for the property ${prop} is not in the list of acceptable values (${allowed.join(', ')}).`, [`#/${prop}`]),
  actionValueNotInList: (action: string, param: string, value: unknown, allowed: unknown[]) =>
    new RedfishError(400, `${BASE}.ActionParameterValueNotInList`, `The value ${JSON.stringify(value)} for the parameter ${param} in the action ${action} is not in the list of acceptable values (${allowed.join(', ')}).`, [`#/${param}`]),
  /** Something the recorded BMC offers that the lab's machine model does not reproduce. */
  notModelled: (what: string) => new RedfishError(400, `${BASE}.ActionNotSupported`, `The lab's virtual server does not model ${what}.`),
  unsupportedMediaType: () => new RedfishError(415, `${BASE}.UnsupportedMediaType`, 'The request specifies a Content-Type for the body that is not supported: send application/json.'),
};

/** Maps a refusal of the machine model to the status and MessageId a real BMC would answer with. */
export function fromMachineError(err: MachineError, action?: string): RedfishError {
  const related = err.property ? [`#/${err.property}`] : [];
  switch (err.kind) {
    case 'conflict':
      return new RedfishError(409, `${BASE}.ResourceInUse`, err.message, related);
    case 'bad-value':
      return new RedfishError(400, action ? `${BASE}.ActionParameterValueError` : `${BASE}.PropertyValueNotInList`, err.message, related);
    case 'not-supported':
      return new RedfishError(400, `${BASE}.ActionParameterNotSupported`, err.message, related);
    case 'in-post':
      // iLO's registry entry for this refusal.
      return new RedfishError(400, 'iLO.2.14.UnableToModifyDuringSystemPOST', `The value for the property cannot be changed while the server is in POST: ${err.message}.`, related);
    case 'media-unreachable':
      return new RedfishError(400, `${BASE}.ActionParameterValueError`, err.message, related);
    case 'invalid-state':
      // iLO's registry entry for this refusal.
      return new RedfishError(400, 'iLO.2.14.InvalidOperationForSystemState', `The operation cannot be done in the system's current state: ${err.message}.`, related);
    case 'internal':
      return new RedfishError(500, `${BASE}.InternalError`, err.message, related);
  }
}

export function errorBody(err: RedfishError): Record<string, unknown> {
  const severity = err.status >= 500 ? 'Critical' : 'Warning';
  return {
    error: {
      code: err.messageId.startsWith('Base.') ? `${BASE}.GeneralError` : err.messageId,
      message: err.message,
      '@Message.ExtendedInfo': [
        {
          '@odata.type': '#Message.v1_1_1.Message',
          MessageId: err.messageId,
          Message: err.message,
          RelatedProperties: err.relatedProperties,
          Severity: severity,
          MessageSeverity: severity,
          Resolution: 'Correct the request and resubmit it.',
        },
      ],
    },
  };
}
